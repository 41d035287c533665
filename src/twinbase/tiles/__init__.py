"""glTF and 3D Tiles writers: arrays in (``model``), bytes out. No HTTP, no database, no iModel files."""
