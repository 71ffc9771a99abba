import Foundation

/// A fresh folder under the system's temporary directory for one test's files; the test removes it
/// (`defer { TemporaryFolder.remove(folder) }`).
public enum TemporaryFolder {
    public static func make(_ prefix: String) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    public static func remove(_ folder: URL) {
        try? FileManager.default.removeItem(at: folder)
    }
}
