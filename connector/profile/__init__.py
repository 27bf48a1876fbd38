"""What a profile is read as: attributes, computed attributes, usage, audiences, persona."""
