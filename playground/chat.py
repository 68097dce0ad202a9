"""Launch the interactive playground: `python playground/chat.py` (same as `redraft chat`)."""

import sys

from redraft.cli.chat import run_chat

if __name__ == "__main__":
    sys.exit(run_chat())
