from analytics.admin import counts  # noqa: F401 - registers the screens
