"""Forms of the operator console."""

from django import forms

from loyalty.models import ImportJob, Organization

MAX_IMPORT_BYTES = 50 * 1024 * 1024


class OrganizationPeriodForm(forms.Form):
    organization = forms.ModelChoiceField(queryset=Organization.objects.none())
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, organizations, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = organizations

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("The start of the period must not be after its end.")
        return data


class ImportUploadForm(forms.Form):
    organization = forms.ModelChoiceField(queryset=Organization.objects.none())
    kind = forms.ChoiceField(choices=ImportJob.Kind.choices)
    target = forms.CharField(
        required=False, help_text="Digital codes: the reward type (its reward_type key)."
    )
    file = forms.FileField(help_text="CSV with a header row, UTF-8.")

    def __init__(self, *args, organizations, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = organizations

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise forms.ValidationError("The file is larger than 50 MB.")
        try:
            return upload.name, upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError("The file is not UTF-8 text.") from None
