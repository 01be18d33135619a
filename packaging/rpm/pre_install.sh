getent group keywarden >/dev/null || groupadd -r keywarden
getent passwd keywarden >/dev/null || useradd -r -g keywarden -d /var/lib/keywarden -s /sbin/nologin -c "keywarden" keywarden
exit 0
