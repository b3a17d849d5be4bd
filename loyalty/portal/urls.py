"""Portal URLs, mounted at /portal/ (DESIGN.md: sign-in at /portal/login/)."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from loyalty.portal import rewards_views, views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="portal/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="portal:login"), name="logout"),
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            template_name="portal/password_reset.html",
            email_template_name="portal/password_reset_email.txt",
            subject_template_name="portal/password_reset_subject.txt",
            success_url=reverse_lazy("portal:password_reset_done"),
        ),
        name="password_reset",
    ),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="portal/password_reset_done.html"),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="portal/password_reset_confirm.html",
            success_url=reverse_lazy("portal:password_reset_complete"),
        ),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="portal/password_reset_complete.html"
        ),
        name="password_reset_complete",
    ),
    path("history/", views.history, name="history"),
    path("profile/", views.profile, name="profile"),
    path("store/", rewards_views.store, name="store"),
    path("store/<uuid:reward_type_id>/buy/", rewards_views.store_buy, name="store-buy"),
    path("rewards/", rewards_views.my_rewards, name="my-rewards"),
    path("partners/", rewards_views.partners, name="partners"),
    path("rewards/<uuid:reward_type_id>/claim/", rewards_views.claim_reward, name="claim-reward"),
    path("choose/", views.choose_organization, name="choose-organization"),
    path("no-membership/", views.no_membership, name="no-membership"),
]
