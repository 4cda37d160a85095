// The route for users with the Android SDK and NDK (README: "Android"): cargo-ndk puts
// libandroid_app.so under app/jniLibs/<abi>/, then `gradle assembleDebug` here packages it.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "neural-style"
include(":app")
