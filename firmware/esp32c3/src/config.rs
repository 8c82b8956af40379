//! Build-time configuration. Every value has a default so a CI build needs no secrets; a real
//! scale is built with the `SCALESENSE_*` variables set (see README.md). Nothing here is read
//! at run time.

/// Wi-Fi network to join (seed 000: the gateway Pi's own access point).
pub const WIFI_SSID: &str = match option_env!("SCALESENSE_WIFI_SSID") {
    Some(s) => s,
    None => "scalesense",
};

/// Wi-Fi password; empty means an open network.
pub const WIFI_PASSWORD: &str = match option_env!("SCALESENSE_WIFI_PASSWORD") {
    Some(s) => s,
    None => "",
};

/// MQTT broker: an IPv4 address or a host name resolved over DNS.
pub const BROKER_HOST: &str = match option_env!("SCALESENSE_BROKER_HOST") {
    Some(s) => s,
    None => "192.168.4.1",
};

/// MQTT broker port, as decimal text.
const BROKER_PORT_TEXT: &str = match option_env!("SCALESENSE_BROKER_PORT") {
    Some(s) => s,
    None => "1883",
};

/// SNTP server (a host name or an IPv4 address). Commands are only run once the clock is set.
pub const NTP_HOST: &str = match option_env!("SCALESENSE_NTP_HOST") {
    Some(s) => s,
    None => "pool.ntp.org",
};

/// Device id; empty means `SCALE-` followed by the last three bytes of the Wi-Fi MAC.
pub const DEVICE_ID: &str = match option_env!("SCALESENSE_DEVICE_ID") {
    Some(s) => s,
    None => "",
};

/// The broker port, checked at compile time.
pub const BROKER_PORT: u16 = parse_port(BROKER_PORT_TEXT);

const fn parse_port(text: &str) -> u16 {
    let bytes = text.as_bytes();
    assert!(!bytes.is_empty(), "SCALESENSE_BROKER_PORT is empty");
    let mut value: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(
            digit.is_ascii_digit(),
            "SCALESENSE_BROKER_PORT is not a number"
        );
        value = value * 10 + (digit - b'0') as u32;
        assert!(value <= 65_535, "SCALESENSE_BROKER_PORT is above 65535");
        i += 1;
    }
    value as u16
}
