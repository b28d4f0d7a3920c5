"""Domain types: operations, enums, sizes, errors. Imports nothing else from ideohub."""
