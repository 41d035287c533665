"""Mesh Export's pipeline: an iModel file to glTF / 3D Tiles files, between the file engine (``bim``) and
the writers (``tiles``). No HTTP and no database here: ``domain.mesh_exports`` and the job call it."""
