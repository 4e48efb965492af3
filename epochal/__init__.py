"""Process glue: the embedded broker and the one command that starts the whole service."""
