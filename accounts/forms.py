from django import forms


class CodeInput(forms.TextInput):
    """A code field that comes back empty after a refusal: a wrong code is no help to retype."""

    def format_value(self, value):
        return None


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code", max_length=32, strip=True,
        widget=CodeInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "spellcheck": "false",
                                "autocapitalize": "off"}),
    )

