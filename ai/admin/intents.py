"""The intent taxonomy: the intents the classifier chooses from, with what each means and a few examples."""

from django import forms
from django.contrib import admin

from ai.models import IntentCategory
from core.admin.base import AuditedModelAdmin


class IntentForm(forms.ModelForm):
    class Meta:
        model = IntentCategory
        fields = ["name", "description", "examples", "is_active", "position"]
        widgets = {"description": forms.TextInput(attrs={"size": 90}),
                   "examples": forms.Textarea(attrs={"rows": 6, "cols": 90})}
        help_texts = {
            "name": "The short name the model answers with and the conversation list filters by (lower case, "
                    "no spaces). Messages classified earlier keep the name they got.",
            "description": "What a message of this intent is about: the model reads it with every message.",
            "examples": "A few typical messages, one per line, in any language your customers write in.",
            "is_active": "Inactive intents are not offered to the model.",
            "position": "Order in the list (and in the prompt): lower first.",
        }


@admin.register(IntentCategory)
class IntentCategoryAdmin(AuditedModelAdmin):
    form = IntentForm
    list_display = ["name", "description", "example_count", "is_active", "position"]
    list_editable = ["is_active", "position"]
    list_filter = ["is_active"]
    search_fields = ["name", "description", "examples"]
    ordering = ["position", "name"]

    def changelist_view(self, request, extra_context=None):
        title = "Intents: the taxonomy the classifier chooses from"
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    @admin.display(description="Examples")
    def example_count(self, obj):
        return len(obj.example_lines())
