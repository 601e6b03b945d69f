"""Prompt formats: how a conversation becomes tokens, and tokens become events."""
