"""Portal forms."""

from django import forms

from loyalty.models import Member


class ProfileForm(forms.ModelForm):
    class Meta:
        model = Member
        fields = ["first_name", "last_name", "email"]
        labels = {"first_name": "First name", "last_name": "Last name", "email": "E-mail"}


class HistoryFilterForm(forms.Form):
    KIND_CHOICES = [
        ("", "All"),
        ("credit", "Points in"),
        ("debit", "Points out"),
    ]
    program = forms.ChoiceField(required=False, label="Program")
    direction = forms.ChoiceField(required=False, choices=KIND_CHOICES, label="Show")
    since = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, programs, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["program"].choices = [("", "All programs")] + [
            (program.key, program.name) for program in programs
        ]
