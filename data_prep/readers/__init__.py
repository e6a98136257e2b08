"""One reader per database layout; each returns a data_prep.items.ReadResult."""
