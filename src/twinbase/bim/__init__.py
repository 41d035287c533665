"""The iModel file engine: reading .bim files (SQLite with the BIS schema) and their changesets."""
