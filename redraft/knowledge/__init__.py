"""Evidence: the local knowledge base and the retrieval that feeds the factuality critic."""
