"""portal_sync: reports every dossier and its status changes to the national public-service portal."""
