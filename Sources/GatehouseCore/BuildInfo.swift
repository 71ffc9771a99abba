/// What this build of Gatehouse is: `gatehouse --version`.
public enum BuildInfo {
    public static let version = "0.9.0"
}
