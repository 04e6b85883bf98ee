"""Alert deliveries in flight: ``alerts.claimed_until``.

An instance that is POSTing an alert's event marks it in flight until this time
(epoch seconds: the claim time plus the webhook's deadline and a margin); other
instances leave the event alone until then, so two instances never POST it at once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("claimed_until", sa.Double, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("claimed_until")
