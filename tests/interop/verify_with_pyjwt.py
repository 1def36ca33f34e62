"""Verify a latch token with PyJWT, knowing only the JWKS URL, the issuer and the audience.

Usage: verify_with_pyjwt.py JWKS_URL TOKEN ISSUER AUDIENCE TYP
Prints the verified claims as JSON; exits 1 with PyJWT's message if verification fails.
"""

import json
import sys

import jwt
from jwt import PyJWKClient


def main() -> int:
    jwks_url, token, issuer, audience, typ = sys.argv[1:6]
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != typ:
            raise jwt.InvalidTokenError(f"typ is {header.get('typ')!r}, expected {typ!r}")
        key = PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "jti"]},
        )
    except jwt.PyJWTError as e:
        print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
