"""Operator forms of the core domain."""

from django import forms

from points.models import PointProgram


class PointAdjustmentForm(forms.Form):
    program = forms.ModelChoiceField(queryset=PointProgram.objects.none())
    amount = forms.IntegerField(
        help_text="Positive to credit, negative to debit.",
        min_value=-1_000_000_000,
        max_value=1_000_000_000,
    )
    reason = forms.CharField(max_length=500, help_text="Recorded on the ledger entry.")

    def __init__(self, *args, member, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["program"].queryset = PointProgram.objects.filter(
            organization_id=member.organization_id
        )

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("The adjustment must not be zero.")
        return amount
