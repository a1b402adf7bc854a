"""Keyed pseudonyms: a patient id becomes HMAC-SHA256(site key, id), so the same patient always gets the same
pseudonym at one site, and nobody without the key can link it back. The key is the site's: it comes from the
environment (``SIMILAR_CASES_SITE_KEY``) or a key file, and must never live inside the archive folder."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from ..errors import CaseInputError

ENV_SITE_KEY = "SIMILAR_CASES_SITE_KEY"
ENV_SITE_KEY_FILE = "SIMILAR_CASES_SITE_KEY_FILE"
_MIN_KEY_BYTES = 16


class Pseudonymizer:
    """patient id -> ``PSN-<20 hex digits>`` (keyed; stable for one key)."""

    def __init__(self, key: bytes):
        if len(key) < _MIN_KEY_BYTES:
            raise CaseInputError(
                "site key",
                f"shorter than {_MIN_KEY_BYTES} bytes",
                "use a long random key, e.g. `openssl rand -hex 32`",
            )
        self._key = key

    def patient(self, patient_id: str) -> str | None:
        text = str(patient_id or "").strip()
        if not text:
            return None
        return "PSN-" + hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:20]

    @classmethod
    def from_site(
        cls, key_file: str | Path | None = None, archive_dir: str | Path | None = None, environ=None
    ) -> Pseudonymizer:
        """The site key from `key_file`, else ``$SIMILAR_CASES_SITE_KEY_FILE``, else ``$SIMILAR_CASES_SITE_KEY``."""
        env = os.environ if environ is None else environ
        key_file = key_file or env.get(ENV_SITE_KEY_FILE)
        if key_file:
            path = Path(key_file).expanduser().resolve()
            if archive_dir is not None and path.is_relative_to(Path(archive_dir).expanduser().resolve()):
                raise CaseInputError(
                    path, "the site key lies inside the archive folder", "keep the key outside the archive"
                )
            try:
                return cls(path.read_bytes().strip())
            except OSError as exc:
                raise CaseInputError(
                    path, f"cannot read the site key ({exc.strerror})", "check the path"
                ) from None
        if env.get(ENV_SITE_KEY):
            return cls(env[ENV_SITE_KEY].encode("utf-8"))
        raise CaseInputError(
            "site key",
            "no key to pseudonymise patient ids",
            f"set {ENV_SITE_KEY} or {ENV_SITE_KEY_FILE} (or --site-key-file), kept outside the archive",
        )
