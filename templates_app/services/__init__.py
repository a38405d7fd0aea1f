"""Template services: authoring and review (workflow), provider submission and sync, versions, selectors."""
