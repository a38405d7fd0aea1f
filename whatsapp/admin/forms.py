"""
The forms of the messaging admin pages: a provider's settings and credentials, the sandbox's simulated
inbound message and its phone (a number to play, a message to send, a button to tap) and the test send;
with what the test send hands to the pipeline, and a refused send as a message for the person who asked
(the conversation page's send box is in send_form.py).
"""


import phonenumbers
from django import forms
from django.db import transaction

from contacts.phones import phone_parse_e164, phone_to_e164
from core.admin.base import as_row_id
from templates_app.models import MessageTemplate
from templates_app.parameters import TemplateVariablesError, template_bind
from templates_app.selectors import registration_template_choices
from whatsapp.models import Message, Provider, UnknownContactPolicy
from whatsapp.providers import backend_class_for, kind_choices, registered_kinds
from whatsapp.providers.events import MessageType, TemplateStatus
from whatsapp.services.outbound import SendRequest, message_send
from whatsapp.services.providers import (
    MB,
    ROW_TARGETS,
    SIMULATED_FILE_FORMATS,
    SimulatedFile,
    provider_apply_options,
    provider_missing_options,
    simulated_file_problem,
)
from whatsapp.services.send_rules import SendRefused

CONTACT_POLICY_FIELDS = ["unknown_contact_policy", "registration_template", "registration_text",
                         "contact_verification_enabled"]


def extra_options() -> dict[str, list]:
    """Options kept in credentials or config, by name, with the kinds that use them."""
    found: dict[str, list] = {}
    for kind in registered_kinds():
        for option in backend_class_for(kind).options:
            if option.target not in ROW_TARGETS:
                found.setdefault(option.name, []).append((kind, option))
    return found


def kind_fields() -> dict[str, dict[str, str]]:
    """Each kind's own fields on the provider form (the row's ids and its settings and credentials), in the
    kind's order, with what the field means for that kind."""
    return {kind: {option.name if option.target not in ROW_TARGETS else option.target: option.help
                   for option in backend_class_for(kind).options}
            for kind in registered_kinds()}


def _row_field_help(name: str) -> str:
    """A row id's meaning for each kind that uses it (the add page, before a kind is picked)."""
    labels = dict(kind_choices())
    return "; ".join(f"{labels[kind]}: {fields[name]}" for kind, fields in kind_fields().items()
                     if name in fields) + "."


def _option_field(option, kinds: str) -> forms.CharField:
    help_text = f"{option.help} ({kinds})."
    if option.secret:
        help_text += " Stored encrypted; leave empty to keep the current value."
        return forms.CharField(required=False, widget=forms.PasswordInput(render_value=False), help_text=help_text)
    return forms.CharField(required=False, help_text=help_text)


class ProviderAdminForm(forms.ModelForm):
    class Meta:
        model = Provider
        fields = ["kind", "name", "is_active", "is_paused", "phone_number", "external_id", "business_account_id",
                  "rate_limit_per_second", "verification_status", *CONTACT_POLICY_FIELDS]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The admin leaves out the fields other kinds use (ProviderAdmin.get_fieldsets).
        self.option_names = [name for name in extra_options() if name in self.fields]
        if self.instance.pk:
            for name in self.option_names:
                if name in self.instance.config:
                    self.fields[name].initial = self.instance.config[name]
        self._describe_kind_fields()
        if "registration_template" in self.fields:  # absent when the user may only view the provider
            self._limit_registration_templates(self.fields["registration_template"])
        if "unknown_contact_policy" in self.fields:
            # A form that leaves the policy out (an older script, a partial POST) keeps the stored one.
            self.fields["unknown_contact_policy"].required = False

    def _describe_kind_fields(self):
        """Say what each id and setting means: for this provider's kind, or for every kind that uses it."""
        own = kind_fields().get(self.instance.kind, {}) if self.instance.pk else {}
        for name in [*ROW_TARGETS, *self.option_names]:
            field = self.fields.get(name)
            if field is None:
                continue
            if name in own:
                secret_note = " Stored encrypted; leave empty to keep the current value." if name not in ROW_TARGETS \
                    and isinstance(field.widget, forms.PasswordInput) else ""
                field.help_text = own[name] + "." + secret_note
            elif name in ROW_TARGETS:
                field.help_text = _row_field_help(name)

    def _limit_registration_templates(self, field):
        if not self.instance.pk:
            field.queryset = MessageTemplate.objects.none()
            field.help_text = "Save the provider first; then choose one of its approved templates."
            return
        # This number's approved templates, and the one already chosen even if it has lost its approval.
        field.queryset = registration_template_choices(self.instance)
        field.help_text = ("One of this number's approved templates, without parameters; sent before the text "
                           "when set.")
        # A template added from here would be a draft of no number: templates are made and approved elsewhere.
        for permission in ("can_add_related", "can_change_related", "can_delete_related"):
            if hasattr(field.widget, permission):
                setattr(field.widget, permission, False)

    def clean_unknown_contact_policy(self):
        return self.cleaned_data.get("unknown_contact_policy") or self.instance.unknown_contact_policy

    def clean(self):
        cleaned = super().clean()
        self._check_registration_reply(cleaned)
        kind = cleaned.get("kind") or self.instance.kind
        if kind:
            self.instance.kind = kind
            for row_field in ROW_TARGETS:
                if row_field in self.fields:  # a field left off the page keeps its stored value
                    setattr(self.instance, row_field, cleaned.get(row_field, ""))
            provider_apply_options(self.instance, {name: cleaned.get(name) for name in self.option_names})
            missing = provider_missing_options(self.instance)
            if missing:
                raise forms.ValidationError(f"A {kind} provider needs: {', '.join(missing)}.")
        return cleaned

    def _check_registration_reply(self, cleaned: dict) -> None:
        """A registration reply must have something to send without values to fill in."""
        template = cleaned.get("registration_template")
        text = (cleaned.get("registration_text") or "").strip()
        if template is not None:
            try:
                template_bind(template, None)
            except TemplateVariablesError as exc:
                needs = ", ".join(exc.missing) or str(exc)
                self.add_error("registration_template", f"{template} needs values ({needs}); a registration reply "
                                                        "has none to give: choose a template without parameters.")
                return
        if cleaned.get("unknown_contact_policy") != UnknownContactPolicy.REGISTRATION_REPLY:
            return
        usable = template is not None and template.status == TemplateStatus.APPROVED
        if not usable and not text:
            reason = (f"{template} is not approved ({template.get_status_display().lower()})" if template
                      else "there is no template and no text")
            self.add_error("unknown_contact_policy", f"A registration reply needs an approved template or a text: "
                                                     f"{reason}. Choose a template or write the text below.")


# Every kind's settings and credentials become declared form fields, so the admin's fieldsets see them.
for _name, _uses in extra_options().items():
    ProviderAdminForm.declared_fields[_name] = ProviderAdminForm.base_fields[_name] = _option_field(
        _uses[0][1], ", ".join(kind for kind, _ in _uses)
    )


class SimulateInboundForm(forms.Form):
    from_phone = forms.CharField(label="From (phone, E.164)", initial="+15551230009", max_length=20)
    name = forms.CharField(label="Profile name", initial="Test customer", max_length=100, required=False)
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4096)


class SandboxPhoneStartForm(forms.Form):
    """Which customer the sandbox phone plays: a number (a new one starts a new conversation)."""

    number = forms.CharField(label="The customer's number (E.164)", max_length=20)
    name = forms.CharField(label="Profile name", max_length=100, required=False)

    def clean_number(self):
        try:
            return phone_parse_e164(self.cleaned_data["number"])
        except ValueError as exc:
            raise forms.ValidationError(f"{exc}. Give it with its country code, e.g. +15551230001.") from None


# A voice note may be 16 MB (WhatsApp's limit); anything larger is refused before it is read.
SANDBOX_PHONE_FILE_MAX_BYTES = 16 * MB
SANDBOX_PHONE_ACCEPT = ".ogg,.opus,.oga,.mp3,.m4a,.wav,.jpg,.jpeg,.png,.webp,audio/ogg,audio/mpeg,audio/mp4,audio/wav,"\
                       "image/jpeg,image/png,image/webp"


class SandboxPhoneSendForm(forms.Form):
    """What the customer sends from the sandbox phone: a text, or a voice note or an image (with a caption)."""

    text = forms.CharField(label="Message", required=False, max_length=4096, widget=forms.Textarea(attrs={
        "rows": 1, "placeholder": "Message", "class": "sbx-text", "aria-label": "Message, or an image's caption"}))
    file = forms.FileField(label="Attach a voice note or an image", required=False,
                           help_text=SIMULATED_FILE_FORMATS,
                           widget=forms.FileInput(attrs={"accept": SANDBOX_PHONE_ACCEPT, "class": "sbx-file"}))
    # The profile name WhatsApp sends with each message.
    name = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if not upload:
            return None
        if upload.size > SANDBOX_PHONE_FILE_MAX_BYTES:
            raise forms.ValidationError(f"The file is larger than {SANDBOX_PHONE_FILE_MAX_BYTES // MB} MB.")
        file = SimulatedFile(data=upload.read(), filename=upload.name or "")
        problem = simulated_file_problem(file)
        if problem:
            raise forms.ValidationError(problem)
        return file

    def clean(self):
        cleaned = super().clean()
        if not self.errors and not cleaned.get("file") and not (cleaned.get("text") or "").strip():
            raise forms.ValidationError("Type a message, or attach a voice note or an image.")
        return cleaned


class SandboxPhoneTapForm(forms.Form):
    """A tap on a reply button or list row: "<our message's id>:<the choice's id>" (one button's value)."""

    choice = forms.CharField(max_length=300)

    def clean_choice(self):
        message_id, _, choice_id = self.cleaned_data["choice"].partition(":")
        if as_row_id(message_id) is None or not choice_id:
            raise forms.ValidationError("Not a button of a message.")
        return as_row_id(message_id), choice_id


class TestSendForm(forms.Form):
    to_phone = forms.CharField(
        label="To (phone, E.164)", max_length=32,
        help_text="WhatsApp only delivers a free-form text to a number that wrote to this business in the last "
                  "24 hours; any other number needs an approved template (send one from its conversation).")
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4096,
                           initial="Test message from the admin.")

    def clean_to_phone(self):
        phone = phone_to_e164(self.cleaned_data["to_phone"])
        try:
            possible = phonenumbers.is_possible_number(phonenumbers.parse(phone))
        except phonenumbers.NumberParseException:
            possible = False
        if not possible:
            raise forms.ValidationError("Enter a phone number with its country code, e.g. +15551230001.")
        return phone


# --- what the send forms hand to the send pipeline ---------------------------------------------------

@transaction.atomic
def send_test_text(*, provider: Provider, actor, to_phone: str, text: str) -> Message:
    request = SendRequest(provider=provider, contact=None, to_phone=to_phone, message_type=MessageType.TEXT,
                          text=text, lane=Message.Lane.REPLY, actor=actor)
    return message_send(request)[0]


def refusal_text(refusal: SendRefused) -> str:
    text = f"Not sent ({refusal.code}): {refusal.reason}."
    templates = refusal.details.get("approved_templates")
    if templates:
        names = ", ".join(f"{template['name']} [{template['language']}]" for template in templates)
        text += f" Approved templates: {names}."
    return text
