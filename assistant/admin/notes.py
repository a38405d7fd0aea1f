"""Notes: a preview of the text, the tags (edited as words separated by commas) and the message each came from."""

from django import forms
from django.contrib import admin
from django.template.defaultfilters import truncatechars

from assistant.admin.common import OwnedAdmin, OwnedForm, message_link, pre
from assistant.models import Note

PREVIEW_CHARS = 80


class TagsField(forms.CharField):
    """A list of tags, written as words separated by commas; kept in lower case, each once."""

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return ", ".join(str(tag) for tag in value)
        return value

    def to_python(self, value):
        words = (word.strip().lower() for word in (super().to_python(value) or "").split(","))
        return list(dict.fromkeys(word for word in words if word))


class NoteForm(OwnedForm):
    class Meta:
        model = Note
        fields = "__all__"

    tags = TagsField(required=False, help_text="Words separated by commas, e.g. ideas, marketing.")


@admin.register(Note)
class NoteAdmin(OwnedAdmin):
    form = NoteForm
    list_display = ["preview", "tags_shown", "owner", "created", "conversation_link"]
    search_fields = ["text", "transcript", "tags"]
    list_select_related = ["owner", "source_message"]
    fields = ["owner", "text", "tags", "transcript_shown", "conversation_link", "created", "updated"]
    readonly_fields = ["transcript_shown", "conversation_link", "created", "updated"]

    @admin.display(description="Text")
    def preview(self, obj):
        return truncatechars(" ".join(obj.text.split()), PREVIEW_CHARS)

    @admin.display(description="Tags")
    def tags_shown(self, obj):
        return ", ".join(str(tag) for tag in obj.tags or []) or "-"

    @admin.display(description="Transcript")
    def transcript_shown(self, obj):
        return pre(obj.transcript)

    @admin.display(description="From")
    def conversation_link(self, obj):
        return message_link(obj.source_message)
