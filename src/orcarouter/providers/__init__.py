"""One module per upstream protocol, each implementing ``ProviderProtocol``."""
