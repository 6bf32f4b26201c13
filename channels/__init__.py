"""Server-side plumbing of the Rasa server: input channels (Telegram, web chat),
and the tracker store that forgets a conversation on request."""
