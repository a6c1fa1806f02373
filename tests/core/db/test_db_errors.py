"""Database errors become one line that says what happened: disk full is not a lost connection, nor is an
index limit; only connection failures are "database unavailable"."""

import psycopg
import pytest

from studyllm_core.db.engine import translate_db_errors
from studyllm_core.errors import DatabaseError, DatabaseUnavailableError


@pytest.mark.parametrize("error, cls, words", [
    (psycopg.errors.DiskFull("could not extend file: No space left on device"), DatabaseError,
     "the database server's disk is full"),
    (psycopg.errors.ProgramLimitExceeded("column cannot have more than 2000 dimensions for hnsw index"), DatabaseError,
     "storing x failed: column cannot have more than 2000 dimensions"),
    (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), DatabaseUnavailableError,
     "database unavailable"),
    (psycopg.OperationalError("server closed the connection unexpectedly"), DatabaseUnavailableError,
     "database unavailable"),
    (psycopg.InterfaceError("the connection is closed"), DatabaseUnavailableError, "database unavailable"),
])
def test_each_database_error_is_named_for_what_it_is(error, cls, words):
    with pytest.raises(DatabaseError) as info, translate_db_errors("storing x"):
        raise error
    assert type(info.value) is cls and words in str(info.value)
    assert (cls is DatabaseUnavailableError) == ("unavailable" in str(info.value))
