// The NativeActivity app without Java or Kotlin code: the manifest is examples/android_app's,
// the native library comes from cargo-ndk (jniLibs/), the identity from app.properties.
import java.util.Properties

plugins {
    id("com.android.application")
}

val app = Properties().apply { file("../../app.properties").inputStream().use { load(it) } }

android {
    namespace = app.getProperty("application_id")
    compileSdk = app.getProperty("target_sdk").toInt()
    defaultConfig {
        applicationId = app.getProperty("application_id")
        minSdk = app.getProperty("min_sdk").toInt()
        targetSdk = app.getProperty("target_sdk").toInt()
        versionCode = app.getProperty("version_code").toInt()
        versionName = app.getProperty("version_name")
    }
    sourceSets.getByName("main") {
        manifest.srcFile("../../AndroidManifest.xml")
        jniLibs.srcDirs("jniLibs")
    }
    packaging {
        // The library extracted at install, as the manifest says (extractNativeLibs) and as in
        // the APK tools/android_apk.sh makes.
        jniLibs.useLegacyPackaging = true
    }
}
