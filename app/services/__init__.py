"""Use cases. Each takes a SQLAlchemy session and `now` (no hidden clock) and speaks domain terms."""
