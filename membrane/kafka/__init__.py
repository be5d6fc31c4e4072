"""Kafka L7 policy (cilium-semantics §2.7, §4.3): the wire protocol's request headers and topics,
``kafka:`` rule matching, and the TOPIC_AUTHORIZATION_FAILED answers a denied request gets.

protocol   framing, request headers, the topics of the API keys that carry them
rules      ``role``/``apiKey``/``apiVersion``/``clientID``/``topic`` matching
responses  synthesized error responses (error 29) in the request's own version
"""
