"""Conversation state, chat logs and their migrations."""
