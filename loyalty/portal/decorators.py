"""Access to portal pages: a signed-in person acting as one of their memberships."""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect

from loyalty.selectors import member_for_request, memberships_for_user


def member_required(view):
    """Anonymous -> sign-in; several memberships and none chosen -> the chooser."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        member = member_for_request(request)
        if member is None:
            if memberships_for_user(request.user):
                return redirect("portal:choose-organization")
            return redirect("portal:no-membership")
        request.member = member
        return view(request, *args, **kwargs)

    return wrapper
