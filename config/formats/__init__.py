"""The project's date formats (settings.FORMAT_MODULE_PATH): one per language code the site runs in."""
