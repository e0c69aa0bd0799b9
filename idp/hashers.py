from django.contrib.auth.hashers import PBKDF2PasswordHasher


class ClientSecretHasher(PBKDF2PasswordHasher):
    """PBKDF2 with few iterations, for client secrets only (DOT's `CLIENT_SECRET_HASHER`).

    Key stretching protects low-entropy passwords; a generated client secret carries 256 random
    bits, so Django's 1.5M iterations only cost ~0.6 s of CPU on every token request, which
    serializes concurrent refreshes far more than the SQLite write lock does.
    """

    algorithm = "idp_client_secret_pbkdf2_sha256"
    iterations = 1000
