"""IFC writing from meshes and element facts (``ifc.writer``), the BIS class to IFC entity mapping
(``ifc.classes``) and the georeferencing math (``ifc.georef``). No HTTP, no database: the glue from an
iModel file is ``twinbase.export.ifc``."""
