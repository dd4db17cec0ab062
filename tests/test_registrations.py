"""Sender-ID registrations: the reviewers' queue, decisions, the timeline, paperwork and e-mails — through the
pages a reviewer, a reseller and a tenant use."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from messaging.models import Message, RegistrationDocument, RegistrationEvent, SenderIDCountry
from messaging.services import outbound, senders
from tenants.models import AuditEvent, Membership
from tests import factories as f
from tests.conftest import token_client

PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"


@pytest.fixture
def reviewer(db):
    user = f.UserFactory(email="reviewer@platform.example", is_staff=True)
    user.groups.add(Group.objects.get(name="Platform reviewers"))
    return user


@pytest.fixture
def sender(tenant, reseller_admin):
    """An alphanumeric sender of the tenant with two countries waiting for paperwork (IN, AE) and one allowed (GB)."""
    account = f.WavixAccountFactory(reseller=tenant.reseller, tenant=tenant)
    sender = f.SenderIDFactory(tenant=tenant, account=account, type="alphanumeric", value="HarborDent")
    registrations = [
        f.SenderIDCountryFactory(sender=sender, country=code, status=status)
        for code, status in (("IN", "in_review"), ("AE", "in_review"), ("GB", "allowlisted"))
    ]
    senders.registrations_submitted(None, registrations)
    return sender


def registration(sender, country) -> SenderIDCountry:
    return SenderIDCountry.objects.get(sender=sender, country=country)


def decide(client, registration, decision, note=""):
    return client.post(reverse("admin:review_detail", args=[registration.pk]), {"decision": decision, "note": note})


def test_approve_one_country_reject_another_the_reseller_hears_the_tenant_sees_sending_follows(
    client, reviewer, sender, tenant, viewer, reseller_admin, django_capture_on_commit_callbacks
):
    client.force_login(reviewer)
    queue = client.get(reverse("admin:review_queue")).content.decode()
    assert "HarborDent" in queue and "India (IN)" in queue
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert decide(client, registration(sender, "IN"), "approve").status_code == 302
        assert decide(client, registration(sender, "AE"), "reject", "The trade licence is expired.").status_code == 302

    assert [m.subject for m in mail.outbox] == ["HarborDent → IN: Approved", "HarborDent → AE: Rejected"]
    assert all(m.to == [reseller_admin.email] for m in mail.outbox)
    assert "Note: The trade licence is expired." in mail.outbox[1].body

    client.force_login(viewer)  # the tenant sees both on each registration's timeline
    for country, shown in (("IN", "Approved"), ("AE", "The trade licence is expired.")):
        page = client.get(reverse("admin:messaging_senderidcountry_change", args=[registration(sender, country).pk]))
        assert shown in page.content.decode() and "reviewer@platform.example" in page.content.decode()
    assert list(RegistrationEvent.objects.filter(registration__country="AE").values_list("to_status", flat=True)) == [
        "in_review",
        "rejected",
    ]

    queued = outbound.message_send(tenant=tenant, sender=sender, to="+919876543210", text="Your appointment")
    assert queued.status == Message.Status.QUEUED
    with pytest.raises(ValidationError) as refused:
        outbound.message_send(tenant=tenant, sender=sender, to="+971501234567", text="Your appointment")
    assert refused.value.message_dict["sender"] == [
        "HarborDent is not allow-listed for United Arab Emirates (AE): its registration is rejected. "
        "Latest note: The trade licence is expired."
    ]


def test_a_rejection_needs_a_reason_and_nothing_moves_without_one(client, reviewer, sender):
    client.force_login(reviewer)
    response = decide(client, registration(sender, "IN"), "reject", "  ")
    assert response.status_code == 200
    assert response.context["form"].errors["note"] == ["Write why it is rejected: the reseller reads it."]
    assert registration(sender, "IN").status == "in_review"
    assert not AuditEvent.objects.filter(action="registration.status").exists()


def test_a_reviewer_cannot_decide_on_their_own_resellers_registrations(client, reviewer, sender, reseller):
    Membership.objects.create(user=reviewer, reseller=reseller, role=Membership.Role.RESELLER_OPERATOR)
    client.force_login(reviewer)
    page = client.get(reverse("admin:review_detail", args=[registration(sender, "IN").pk])).content.decode()
    assert "another reviewer must decide" in page
    response = decide(client, registration(sender, "IN"), "approve")
    assert "another reviewer must decide" in response.content.decode()
    assert registration(sender, "IN").status == "in_review"


def test_resellers_cannot_open_the_queue_or_change_a_status(client, operator, sender):
    client.force_login(operator)
    assert client.get(reverse("admin:review_queue")).status_code == 404
    assert decide(client, registration(sender, "IN"), "approve").status_code == 404
    change = reverse("admin:messaging_senderidcountry_change", args=[registration(sender, "IN").pk])
    assert client.post(change, {"status": "approved"}).status_code == 403
    api = token_client(operator).patch(
        f"/api/v1/sender-ids/{sender.pk}/", {"countries": ["IN"], "status": "approved"}, format="json"
    )
    assert api.status_code in (400, 405)
    assert registration(sender, "IN").status == "in_review"


def test_the_queue_filters_by_country_reseller_and_status_oldest_first(client, reviewer, sender, other_tenant):
    other = f.SenderIDFactory(tenant=other_tenant, type="alphanumeric", value="OtherCo")
    f.SenderIDCountryFactory(sender=other, country="IN", status="needs_documents")
    SenderIDCountry.objects.filter(sender=sender, country="AE").update(
        status_changed_at=timezone.now() - timedelta(days=5)
    )
    client.force_login(reviewer)
    rows = client.get(reverse("admin:review_queue")).context["rows"]
    assert [(r["registration"].sender.value, r["registration"].country) for r in rows][0] == ("HarborDent", "AE")
    assert rows[0]["age"] == "5 days"
    by_country = client.get(reverse("admin:review_queue"), {"country": "IN"}).context["rows"]
    assert {r["registration"].sender.value for r in by_country} == {"HarborDent", "OtherCo"}
    by_reseller = client.get(reverse("admin:review_queue"), {"reseller": other_tenant.reseller_id}).context["rows"]
    assert [r["registration"].sender.value for r in by_reseller] == ["OtherCo"]
    by_status = client.get(reverse("admin:review_queue"), {"status": "needs_documents"}).context["rows"]
    assert [r["registration"].sender.value for r in by_status] == ["OtherCo"]


# ---------------------------------------------------------------------------------------------------------------
# Paperwork
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def needs_documents(client, reviewer, sender, django_capture_on_commit_callbacks):
    client.force_login(reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        decide(client, registration(sender, "IN"), "request_documents", "A trade licence, please.")
    client.logout()
    return registration(sender, "IN")


def upload(client, reg, name, content):
    return client.post(
        reverse("admin:messaging_senderidcountry_documents", args=[reg.pk]),
        {"action": "upload", "file": SimpleUploadedFile(name, content, content_type="application/pdf")},
    )


def test_a_reseller_uploads_a_pdf_and_submits_it_and_the_reviewers_hear(
    client, operator, needs_documents, reviewer, settings, django_capture_on_commit_callbacks
):
    client.force_login(operator)
    assert upload(client, needs_documents, "licence.pdf", PDF).status_code == 302
    document = RegistrationDocument.objects.get()
    assert (document.name, document.content_type, document.size) == ("licence.pdf", "application/pdf", len(PDF))
    stored = document.file.path
    assert stored.startswith(str(settings.PRIVATE_MEDIA_ROOT)) and not stored.endswith("licence.pdf")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:messaging_senderidcountry_documents", args=[needs_documents.pk]), {"action": "submit"}
        )
    assert response.status_code == 302
    assert registration(needs_documents.sender, "IN").status == "in_review"
    staff = [m for m in mail.outbox if m.to == [reviewer.email]]
    assert [m.subject for m in staff] == ["Documents submitted for review: 1 registration(s)"]


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        (
            "licence.pdf",
            b"MZ\x90\x00 not a pdf at all",
            "licence.pdf is not a PDF, PNG or JPEG file (checked by its content).",
        ),
        ("photo.png", b"GIF89a" + b"\x00" * 20, "photo.png is not a PDF, PNG or JPEG file (checked by its content)."),
    ],
)
def test_a_file_is_judged_by_its_content_not_its_name(client, operator, needs_documents, name, content, error):
    client.force_login(operator)
    response = upload(client, needs_documents, name, content)
    assert response.context["form"].errors["file"] == [error]
    assert not RegistrationDocument.objects.exists()


def test_a_png_named_pdf_is_kept_as_a_png_and_size_is_limited(client, operator, needs_documents, settings):
    client.force_login(operator)
    upload(client, needs_documents, "scan.pdf", PNG)
    assert RegistrationDocument.objects.get().content_type == "image/png"
    settings.REGISTRATION_DOCUMENT_MAX_BYTES = 1024
    response = upload(client, needs_documents, "big.pdf", PDF + b"0" * 2048)
    assert response.context["form"].errors["file"] == ["big.pdf is 2 KB; the limit is 1 KB."]
    assert RegistrationDocument.objects.count() == 1


def test_documents_are_served_to_their_reseller_and_reviewers_only(
    client, operator, needs_documents, reviewer, other_admin, viewer
):
    client.force_login(operator)
    upload(client, needs_documents, "licence.pdf", PDF)
    url = reverse("admin:registration_document", args=[RegistrationDocument.objects.get().pk])
    response = client.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF
    assert response["Content-Disposition"] == 'attachment; filename="licence.pdf"'
    client.force_login(reviewer)
    assert client.get(url).status_code == 200
    for outsider in (other_admin, viewer):
        client.force_login(outsider)
        assert client.get(url).status_code == 404
    client.force_login(other_admin)
    assert (
        client.get(reverse("admin:messaging_senderidcountry_documents", args=[needs_documents.pk])).status_code == 404
    )


def test_a_submission_without_documents_is_refused(client, operator, needs_documents):
    client.force_login(operator)
    response = client.post(
        reverse("admin:messaging_senderidcountry_documents", args=[needs_documents.pk]), {"action": "submit"}
    )
    assert response.context["form"].errors["file"] == ["Upload the documents the country asks for first."]
    assert registration(needs_documents.sender, "IN").status == "needs_documents"


# ---------------------------------------------------------------------------------------------------------------
# E-mails on new submissions, and the digest
# ---------------------------------------------------------------------------------------------------------------


def test_a_new_registration_needing_paperwork_tells_the_reviewers(tenant, reviewer, django_capture_on_commit_callbacks):
    sender = f.SenderIDFactory(tenant=tenant, type="alphanumeric", value="NewCo")
    paperwork = f.SenderIDCountryFactory(sender=sender, country="IN", status="needs_documents")
    allowed = f.SenderIDCountryFactory(sender=sender, country="GB", status="requested")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        senders.registrations_submitted(None, [paperwork, allowed])
    assert [(m.subject, m.to) for m in mail.outbox] == [
        ("New registration needing paperwork: 1 registration(s)", [reviewer.email])
    ]
    assert "NewCo → IN" in mail.outbox[0].body and "GB" not in mail.outbox[0].body


def test_the_daily_digest_lists_what_waits_too_long(sender, reviewer, settings):
    settings.REGISTRATION_DIGEST_AFTER_DAYS = 3
    SenderIDCountry.objects.filter(sender=sender, country="IN").update(
        status_changed_at=timezone.now() - timedelta(days=4)
    )
    mail.outbox.clear()
    assert senders.review_digest() == 1
    assert mail.outbox[0].subject == "Waiting for review: 1 registration(s)"
    assert "HarborDent → IN" in mail.outbox[0].body and "for 4 days" in mail.outbox[0].body
    SenderIDCountry.objects.filter(sender=sender).update(status_changed_at=timezone.now())
    mail.outbox.clear()
    assert senders.review_digest() == 0 and not mail.outbox


def test_wavix_allow_listing_is_a_system_entry_on_the_timeline(sender, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        senders.registration_set_status(
            actor=None, registration=registration(sender, "IN"), status="allowlisted", note="Wavix lists it."
        )
    event = RegistrationEvent.objects.filter(registration__country="IN").last()
    assert (event.from_status, event.to_status, event.actor_label, event.note) == (
        "in_review",
        "allowlisted",
        "system",
        "Wavix lists it.",
    )


def test_a_registration_names_its_reviewer_without_linking_to_a_page_the_reseller_cannot_open(
    client, reviewer, operator, other_admin, sender
):
    reviewer.first_name, reviewer.last_name = "Rita", "Reviewer"
    reviewer.save()
    client.force_login(reviewer)
    decide(client, registration(sender, "IN"), "approve")
    change = reverse("admin:messaging_senderidcountry_change", args=[registration(sender, "IN").pk])
    client.force_login(operator)
    page = client.get(change).content.decode()
    assert "Rita Reviewer" in page
    assert "/auth/user/" not in page and "/tenants/membership/" not in page
    client.force_login(other_admin)  # another reseller: the registration, and its reviewer, are not there at all
    assert client.get(change).status_code == 404
