# Sourced (POSIX sh) by the Dockerfile's RUN steps that download (apt-get, pip). Does nothing unless
# the build was given an extra CA bundle as the BuildKit secret `ca_bundle` (TLS-intercepting proxies):
#   docker build --secret id=ca_bundle,src=/path/to/bundle.pem ...   (scripts/docker-image.sh does it)
# Then the image's own CAs (if any yet) and the secret are joined in /run/sparkdl-ca, a tmpfs mount of
# the same RUN step, and pip, curl, Python's ssl and apt are pointed at that file for this step only.
# Neither the secret nor the joined bundle is written into a layer, and nothing here is an ENV.
if [ -s /run/secrets/ca_bundle ]; then
  _ca=/run/sparkdl-ca/bundle.pem
  { cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null || true; cat /run/secrets/ca_bundle; } >"$_ca"
  printf 'Acquire::https::CAInfo "%s";\n' "$_ca" >/run/sparkdl-ca/apt.conf
  export PIP_CERT="$_ca" SSL_CERT_FILE="$_ca" REQUESTS_CA_BUNDLE="$_ca" CURL_CA_BUNDLE="$_ca" \
         APT_CONFIG=/run/sparkdl-ca/apt.conf
  echo "[docker-ca-env] trusting the extra CA bundle given as the build secret ca_bundle (this step only)"
  unset _ca
fi
