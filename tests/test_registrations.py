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


def decide(client, registration, decision, note="", confirmed=True):
    """A reviewer's decision, through its confirmation step when it has one (request documents, reject)."""
    data = {"decision": decision, "note": note, **({"confirmed": "1"} if confirmed else {})}
    return client.post(reverse("admin:review_detail", args=[registration.pk]), data)


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
    everything = {"waiting": "all"}  # OtherCo waits on its reseller: not in the default view (a test below)
    by_country = client.get(reverse("admin:review_queue"), {"country": "IN", **everything}).context["rows"]
    assert {r["registration"].sender.value for r in by_country} == {"HarborDent", "OtherCo"}
    by_reseller = client.get(
        reverse("admin:review_queue"), {"reseller": other_tenant.reseller_id, **everything}
    ).context["rows"]
    assert [r["registration"].sender.value for r in by_reseller] == ["OtherCo"]
    by_status = client.get(reverse("admin:review_queue"), {"status": "needs_documents"}).context["rows"]
    assert [r["registration"].sender.value for r in by_status] == ["OtherCo"]


@pytest.mark.parametrize(
    ("decision", "note", "status"),
    [
        ("reject", "The trade licence is expired.", "rejected"),
        ("request_documents", "A trade licence.", "needs_documents"),
    ],
)
def test_a_noted_decision_is_shown_with_its_note_and_moves_only_once_confirmed(
    client, reviewer, sender, decision, note, status, django_capture_on_commit_callbacks
):
    client.force_login(reviewer)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        first = decide(client, registration(sender, "AE"), decision, f"  {note}\n", confirmed=False)
    assert first.status_code == 200
    assert [t.name for t in first.templates][0] == "messaging/review_confirm.html"
    page = first.content.decode()
    assert f'<blockquote id="confirm-note">{note}</blockquote>' in page
    assert f'name="note" value="{note}"' in page and 'name="confirmed" value="1"' in page
    assert registration(sender, "AE").status == "in_review"
    assert not AuditEvent.objects.filter(action="registration.status").exists() and mail.outbox == []

    url = reverse("admin:review_detail", args=[registration(sender, "AE").pk])
    back = client.post(url, {"decision": decision, "note": note, "edit": "1"})  # "Change the note"
    assert back.status_code == 200 and registration(sender, "AE").status == "in_review"
    assert f'<textarea name="note" id="id_note_{decision}" rows="3" required>{note}</textarea>' in back.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        assert decide(client, registration(sender, "AE"), decision, note).status_code == 302
    assert (registration(sender, "AE").status, registration(sender, "AE").note) == (status, note)
    assert len(mail.outbox) == 1 and f"Note: {note}" in mail.outbox[0].body


@pytest.mark.parametrize("confirmed", [False, True])
def test_a_request_for_documents_without_a_note_is_refused_on_the_server(client, reviewer, sender, confirmed):
    client.force_login(reviewer)
    response = decide(client, registration(sender, "IN"), "request_documents", " ", confirmed=confirmed)
    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "messaging/review_detail.html"  # no confirmation step
    assert response.context["form"].errors["note"] == ["Write which documents are needed: the reseller reads it."]
    assert 'id="error-note"' in response.content.decode()
    assert registration(sender, "IN").status == "in_review"


def test_approving_needs_no_note_and_no_confirmation(client, reviewer, sender):
    client.force_login(reviewer)
    assert decide(client, registration(sender, "IN"), "approve", confirmed=False).status_code == 302
    assert registration(sender, "IN").status == "approved"


def test_each_decision_is_its_own_button_and_the_noted_ones_require_their_note(client, reviewer, sender):
    client.force_login(reviewer)
    page = client.get(reverse("admin:review_detail", args=[registration(sender, "IN").pk])).content.decode()
    assert '<select name="decision"' not in page
    for decision in ("approve", "request_documents", "reject", "allowlist"):
        assert f'id="decide-{decision}"' in page
    assert (
        'id="id_note_reject" rows="3" required' in page and 'id="id_note_request_documents" rows="3" required' in page
    )
    assert 'id="id_note_approve"' not in page


def test_a_confirmation_for_a_move_the_status_no_longer_allows_is_refused(client, reviewer, sender):
    SenderIDCountry.objects.filter(sender=sender, country="IN").update(status="allowlisted")
    client.force_login(reviewer)
    response = decide(client, registration(sender, "IN"), "reject", "Too late.", confirmed=False)
    assert [t.name for t in response.templates][0] == "messaging/review_detail.html"
    assert response.context["form"].non_field_errors() == ["Nothing to decide: the registration is Allow-listed."]
    assert '<p class="errornote">Nothing to decide: the registration is Allow-listed.</p>' in response.content.decode()
    assert registration(sender, "IN").status == "allowlisted"


def test_the_queue_opens_on_what_waits_on_a_reviewer_and_tabs_show_the_rest(client, reviewer, sender, other_tenant):
    other = f.SenderIDFactory(tenant=other_tenant, type="alphanumeric", value="OtherCo")
    for country, status in (("IN", "needs_documents"), ("AE", "rejected"), ("SA", "approved"), ("QA", "in_review")):
        f.SenderIDCountryFactory(sender=other, country=country, status=status)
    client.force_login(reviewer)

    def shown(**params):
        response = client.get(reverse("admin:review_queue"), params)
        return {(r["registration"].sender.value, r["registration"].country) for r in response.context["rows"]}

    waiting_on_reviewer = {("HarborDent", "IN"), ("HarborDent", "AE"), ("OtherCo", "QA")}
    assert shown() == waiting_on_reviewer
    assert shown(waiting="reviewer") == waiting_on_reviewer
    assert shown(waiting="reseller") == {("OtherCo", "IN"), ("OtherCo", "AE")}
    assert shown(waiting="wavix") == {("OtherCo", "SA")}
    assert shown(waiting="all") == waiting_on_reviewer | {("OtherCo", "IN"), ("OtherCo", "AE"), ("OtherCo", "SA")}
    assert shown(waiting="reseller", reseller=sender.tenant.reseller_id) == set()
    assert shown(status="rejected") == {("OtherCo", "AE")}  # a status is shown wherever it waits
    tabs = client.get(reverse("admin:review_queue")).context["tabs"]
    assert [(t["key"], t["count"]) for t in tabs] == [("reviewer", 3), ("reseller", 2), ("wavix", 1), ("all", 6)]
    page = client.get(reverse("admin:review_queue")).content.decode()
    assert 'id="tab-reviewer" aria-current="page"' in page and 'href="?waiting=reseller"' in page


@pytest.mark.parametrize(
    ("ago", "shown"),
    [
        (timedelta(days=3, hours=4, minutes=10), "3 days 4 hours"),
        (timedelta(days=1, minutes=5), "1 day"),
        (timedelta(hours=5, minutes=7), "5 hours 7 minutes"),
        (timedelta(minutes=1, seconds=30), "1 minute"),
        (timedelta(seconds=20), "less than a minute"),
    ],
)
def test_waiting_shows_the_real_age_to_the_hour(client, reviewer, sender, ago, shown):
    SenderIDCountry.objects.filter(sender=sender, country="IN").update(status_changed_at=timezone.now() - ago)
    client.force_login(reviewer)
    rows = client.get(reverse("admin:review_queue"), {"country": "IN"}).context["rows"]
    assert [r["age"] for r in rows] == [shown]
    page = client.get(reverse("admin:review_detail", args=[registration(sender, "IN").pk])).content.decode()
    assert f'for <span id="age">{shown}</span>' in page


def test_waiting_counts_from_when_the_documents_were_submitted_not_from_the_request(
    client, operator, reviewer, needs_documents
):
    # Documents were asked for a week ago; the reseller submitted them just now: the reviewer's wait starts now.
    SenderIDCountry.objects.filter(pk=needs_documents.pk).update(status_changed_at=timezone.now() - timedelta(days=7))
    client.force_login(operator)
    upload(client, needs_documents, "licence.pdf", PDF)
    client.post(reverse("admin:messaging_senderidcountry_documents", args=[needs_documents.pk]), {"action": "submit"})
    client.force_login(reviewer)
    rows = client.get(reverse("admin:review_queue"), {"country": "IN"}).context["rows"]
    assert [(r["registration"].status, r["age"]) for r in rows] == [("in_review", "less than a minute")]


def test_tenant_viewers_and_other_resellers_get_404_on_every_review_page(
    client, viewer, other_admin, reseller_admin, sender
):
    detail = reverse("admin:review_detail", args=[registration(sender, "IN").pk])
    for outsider in (viewer, other_admin, reseller_admin):
        client.force_login(outsider)
        assert client.get(reverse("admin:review_queue")).status_code == 404
        assert client.get(reverse("admin:review_queue"), {"waiting": "all"}).status_code == 404
        assert client.get(detail).status_code == 404
        assert decide(client, registration(sender, "IN"), "reject", "No.", confirmed=False).status_code == 404
        assert decide(client, registration(sender, "IN"), "reject", "No.").status_code == 404
    assert registration(sender, "IN").status == "in_review"


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
    assert response["Content-Disposition"] == 'inline; filename="licence.pdf"'  # opens in the browser
    client.force_login(reviewer)
    assert client.get(url).status_code == 200
    for outsider in (other_admin, viewer):
        client.force_login(outsider)
        assert client.get(url).status_code == 404
    client.force_login(other_admin)
    assert (
        client.get(reverse("admin:messaging_senderidcountry_documents", args=[needs_documents.pk])).status_code == 404
    )


@pytest.mark.parametrize(
    ("content_type", "disposition", "served_as"),
    [
        ("image/png", "inline", "image/png"),
        ("image/jpeg", "inline", "image/jpeg"),
        ("image/webp", "inline", "image/webp"),
        ("text/html", "attachment", "application/octet-stream"),  # never rendered on the portal's origin
        ("image/svg+xml", "attachment", "application/octet-stream"),  # an SVG can carry script
    ],
)
def test_pdfs_and_images_open_in_the_browser_anything_else_downloads(
    client, operator, needs_documents, reviewer, viewer, other_admin, content_type, disposition, served_as
):
    client.force_login(operator)
    upload(client, needs_documents, "scan.png", PNG)
    document = RegistrationDocument.objects.get()
    RegistrationDocument.objects.filter(pk=document.pk).update(content_type=content_type)  # as if judged so
    url = reverse("admin:registration_document", args=[document.pk])
    client.force_login(reviewer)
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'{disposition}; filename="scan.png"'
    assert response["Content-Type"] == served_as
    assert response["X-Content-Type-Options"] == "nosniff"
    for outsider in (viewer, other_admin):  # a tenant viewer and another reseller: as if it did not exist
        client.force_login(outsider)
        assert client.get(url).status_code == 404


def test_a_documents_name_cannot_break_out_of_its_header(client, operator, needs_documents, reviewer):
    client.force_login(operator)
    upload(client, needs_documents, "licence.pdf", PDF)
    RegistrationDocument.objects.update(name='a"; filename="evil.html.pdf')  # a name as a client may send it
    client.force_login(reviewer)
    response = client.get(reverse("admin:registration_document", args=[RegistrationDocument.objects.get().pk]))
    assert response["Content-Disposition"] == 'inline; filename="a\\"; filename=\\"evil.html.pdf"'


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
