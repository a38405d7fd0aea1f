"""
The assistant's policy per provider: on or off, the preset, the reaction to a stored note, how long it steps
back after a person replied, the templates for reminders and summaries outside the 24-hour window, and the
per-outcome overrides, edited as one choice per outcome (stored in the policy's `overrides` JSON).
"""

from django import forms
from django.contrib import admin
from django.utils.html import format_html_join

from assistant.admin.common import when
from assistant.models import AssistantPolicy
from assistant.policy import OVERRIDABLE, OVERRIDE_ACTIONS
from core.admin.base import AuditedModelAdmin
from templates_app.models import MessageTemplate
from whatsapp.admin.per_provider import OnePerProviderAdmin
from whatsapp.providers.events import TemplateStatus

PRESET_RULE = ""
OVERRIDE_LABELS = {"silent": "Silent: send nothing", "confirm": "Confirm: one line",
                   "react": "React: an emoji on the message"}
OVERRIDE_CHOICES = [(PRESET_RULE, "The preset's rule"),
                    *[(str(action), OVERRIDE_LABELS.get(str(action), str(action))) for action in OVERRIDE_ACTIONS]]
OUTCOME_FIELD_PREFIX = "override_"


def outcome_label(outcome: str) -> str:
    return outcome.replace("_", " ").capitalize()


def override_field_name(outcome: str) -> str:
    return f"{OUTCOME_FIELD_PREFIX}{outcome}"


OVERRIDE_FIELDS = [override_field_name(str(outcome)) for outcome in OVERRIDABLE]


class AssistantPolicyFormBase(forms.ModelForm):
    class Meta:
        model = AssistantPolicy
        fields = ["provider", "enabled", "preset", "note_reaction", "handoff_minutes", "reminder_template",
                  "summary_template"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stored = self.instance.overrides if isinstance(self.instance.overrides, dict) else {}
        for outcome in OVERRIDABLE:
            name = override_field_name(str(outcome))
            if name in self.fields:
                self.fields[name].initial = stored.get(str(outcome), PRESET_RULE)
        for name in ("reminder_template", "summary_template"):
            if name in self.fields:
                # Only an approved utility template can go out of the window.
                self.fields[name].queryset = (MessageTemplate.objects.select_related("provider")
                                              .defer("provider__credentials")
                                              .filter(status=TemplateStatus.APPROVED,
                                                      category=MessageTemplate.Category.UTILITY)
                                              .order_by("provider__name", "name", "language", "-version"))

    def clean(self):
        cleaned = super().clean()
        provider = cleaned.get("provider") or (self.instance.provider if self.instance.provider_id else None)
        for name in ("reminder_template", "summary_template"):
            template = cleaned.get(name)
            if template is not None and provider is not None and template.provider_id != provider.pk:
                self.add_error(name, f"This template belongs to {template.provider.name}; choose one of "
                                     f"{provider.name}'s.")
        return cleaned

    def overrides_chosen(self) -> dict:
        """The overrides as stored: one entry per outcome given a rule of its own; keys this form does not know
        (written by a newer version) are kept as they were."""
        stored = self.instance.overrides if isinstance(self.instance.overrides, dict) else {}
        known = {str(outcome) for outcome in OVERRIDABLE}
        overrides = {key: value for key, value in stored.items() if key not in known}
        for outcome in OVERRIDABLE:
            chosen = self.cleaned_data.get(override_field_name(str(outcome)), PRESET_RULE)
            if chosen:
                overrides[str(outcome)] = chosen
        return overrides

    def save(self, commit=True):
        self.instance.overrides = self.overrides_chosen()
        return super().save(commit)


# One select per outcome, declared on the class so that the admin's fieldsets can name them.
AssistantPolicyForm = type(AssistantPolicyFormBase)(
    "AssistantPolicyForm", (AssistantPolicyFormBase,),
    {"__module__": __name__,
     **{override_field_name(str(outcome)): forms.ChoiceField(choices=OVERRIDE_CHOICES, required=False,
                                                             label=outcome_label(str(outcome)))
        for outcome in OVERRIDABLE}})


@admin.register(AssistantPolicy)
class AssistantPolicyAdmin(OnePerProviderAdmin, AuditedModelAdmin):
    provider_related_name = "assistant_policy"
    form = AssistantPolicyForm
    list_display = ["provider_name", "enabled", "preset", "note_reaction", "handoff_minutes", "overrides_shown",
                    "updated"]
    list_filter = ["enabled", "preset"]
    search_fields = ["provider__name"]
    fieldsets = [
        (None, {"fields": ["provider", "enabled", "preset", "note_reaction", "handoff_minutes"]}),
        ("What to send after each outcome", {
            "fields": OVERRIDE_FIELDS,
            "description": "Each outcome follows the preset's rule unless it is given one of its own here."}),
        ("Outside the 24-hour window", {"fields": ["reminder_template", "summary_template"]}),
        (None, {"fields": ["updated"]}),
    ]
    readonly_fields = ["updated"]

    @admin.display(description="Provider", ordering="provider__name")
    def provider_name(self, obj):
        return obj.provider.name

    @admin.display(description="Overrides")
    def overrides_shown(self, obj):
        overrides = obj.overrides if isinstance(obj.overrides, dict) else {}
        if not overrides:
            return "-"
        return format_html_join(", ", "{}: {}", ((outcome_label(key), value) for key, value in overrides.items()))

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, obj):
        return when(obj.updated_at)
