"""speclm.tools — spectrum files, line list, cosmology, SDSS lookup, redshift checks. No torch here."""
