chown root:keywarden /etc/keywarden /etc/keywarden/keywarden.toml
chmod 0750 /etc/keywarden
chmod 0640 /etc/keywarden/keywarden.toml
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
exit 0
