"""Tests of ``balsamd top``: its frames, their text, the command, and the live screen in tmux."""
