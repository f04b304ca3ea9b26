"""The lab: real sandbox nodes behind emulated cloud APIs (EC2 via moto, Redfish via sushy-tools)."""
