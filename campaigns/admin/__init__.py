"""The campaigns' admin pages: campaigns (campaigns.py), segments and imported lists (audiences.py), and the
recipients and suppressions they leave (records.py)."""

from campaigns.admin import audiences, campaigns, records  # noqa: F401 - registers the pages
