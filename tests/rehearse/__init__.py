"""The kiosk rehearsal (`make rehearse`): the appliance installed and booted in a VM with real systemd.

image.py builds the kiosk image from Debian packages (cached by its recipe), vm.py runs it under
qemu (QMP for power, screen and keyboard; the guest agent for commands), scenarios.py is what is
asserted, __main__.py runs them and writes .rehearse/report.json.
"""
