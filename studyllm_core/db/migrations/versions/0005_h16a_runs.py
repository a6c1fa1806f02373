"""Run history in provenance: each materialisation of a group is its own record.

Groups stay what a result *is* (`clusters[demo|10]`, one row per asset partition, its metadata the
latest); `materializations` say each time it was *made*: by which run (a Dagster run id, or a CLI
run's `cli-...` id), with which config (secrets masked), code version and library versions, when.
`materialization_inputs` ties a record to the groups it read and to the record each input had at
that moment, so the lineage of one run is told apart from another's (group links only accumulate).

Existing data stays readable: every group gets one record (run id from its metadata's
`dagster_run_id`, else `before-0005`; its config, asset key and partition from its metadata; its
creation time), and every `depends_on` link becomes an input of the child's record.

Revision ID: 0005_h16a_runs
Revises: 0004_server_group_embeddings
Create Date: 2026-11-30
"""

from alembic import op

revision = "0005_h16a_runs"
down_revision = "0004_server_group_embeddings"
branch_labels = None
depends_on = None

LEGACY_RUN = "before-0005"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE materializations (
            id bigserial PRIMARY KEY,
            group_id bigint NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
            run_id varchar(128) NOT NULL,
            asset_key varchar(512) NOT NULL,
            partition varchar(512),
            config jsonb,
            code_version varchar(128),
            versions jsonb,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ix_materializations_run ON materializations (run_id)")
    op.execute("CREATE INDEX ix_materializations_group ON materializations (group_id, id)")
    op.execute("CREATE INDEX ix_materializations_asset ON materializations (asset_key, partition, id)")
    op.execute(
        """
        CREATE TABLE materialization_inputs (
            materialization_id bigint NOT NULL REFERENCES materializations (id) ON DELETE CASCADE,
            input_group_id bigint NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
            input_materialization_id bigint REFERENCES materializations (id) ON DELETE SET NULL,
            CONSTRAINT pk_materialization_inputs PRIMARY KEY (materialization_id, input_group_id)
        )
        """
    )
    op.execute("CREATE INDEX ix_materialization_inputs_input ON materialization_inputs (input_materialization_id)")
    op.execute(
        "INSERT INTO materializations (group_id, run_id, asset_key, partition, config, created_at) "
        f"SELECT id, coalesce(metadata_json->>'dagster_run_id', '{LEGACY_RUN}'), coalesce(metadata_json->>'asset_key', name), "
        "metadata_json->>'partition', metadata_json->'config', created_at FROM groups ORDER BY id"
    )
    op.execute(
        "INSERT INTO materialization_inputs (materialization_id, input_group_id, input_materialization_id) "
        "SELECT c.id, l.parent_group_id, p.id FROM group_links l "
        "JOIN materializations c ON c.group_id = l.child_group_id "
        "JOIN materializations p ON p.group_id = l.parent_group_id "
        "WHERE l.link_type = 'depends_on'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE materialization_inputs")
    op.execute("DROP TABLE materializations")
