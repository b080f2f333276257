"""Database schemas that no migration creates: the one-off bootstrap job and who still needs it."""
