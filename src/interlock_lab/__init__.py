"""The lab: real sandbox nodes behind emulated cloud APIs (EC2 by moto, Redfish by sushy-tools)."""
