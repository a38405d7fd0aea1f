"""The assistant's REST API (views.py), its serializers and filters; items.py holds what the API and the admin
pages do alike to the items they edit."""
