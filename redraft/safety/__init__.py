"""Safety, RAISE-style: the critic, asking the user and resuming with the answer, the
attribute-acquisition paths and the offline search that builds them, and PENGUIN's judge."""
