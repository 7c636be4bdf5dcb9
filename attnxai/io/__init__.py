"""Reading what users give attnxai: datasets, concept sets and their content hashes."""
