"""Keep token records in step with Django sessions."""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.models import Session
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from oauth_client.models import OAuthSession


@receiver(post_delete, sender=Session)
def end_records_of_deleted_session(sender: Any, instance: Session, **kwargs: Any) -> None:
    """`clearsessions` and session deletion end the matching token records (tokens discarded, not revoked:
    revoking needs the network, which `oauth_sessions_prune` does in batches)."""
    OAuthSession.objects.filter(session_key=instance.session_key, ended_at__isnull=True).update(
        ended_at=timezone.now(),
        ended_reason=OAuthSession.EndReason.SESSION_GONE,
        access_token="",
        id_token="",
        refresh_token="",
    )
