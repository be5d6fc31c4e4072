"""DNS-based policy (``toFQDNs``): what pods resolved, and the identities the answers give IPs.

cache       the DNS cache: name -> IPs with TTL, min-TTL, per-name IP cap, expiry that spares IPs in use
identities  the IPs ``toFQDNs`` selectors select -> node-local identities for the ipcache and policy
dnsrules    L7 ``dns:`` rules: which query names an endpoint may ask for
dnsmessage  the DNS proxy's decisions on wire messages (parse, REFUSED/NXDOMAIN, answers' A/CNAME records)
"""
